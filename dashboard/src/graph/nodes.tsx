// The two node kinds drawn on a run's graph. Each carries the stable test ids the e2e
// suite relies on: task-node-{taskId} / group-node-{firstMember}, with data-state.

import { memo } from 'react';
import { Handle, Position, type Node, type NodeProps } from '@xyflow/react';
import type { StateCounts, Task, TaskState } from '../api/types';
import { CountsBar } from '../components/CountsBar';

export type TaskFlowNode = Node<{ task: Task; selected: boolean }, 'task'>;
export type GroupFlowNode = Node<
  { label: string; handler: string; members: string[]; counts: StateCounts; state: TaskState; selected: boolean },
  // Not 'group': xyflow styles its own built-in group type under that name.
  'taskGroup'
>;
export type DagFlowNode = TaskFlowNode | GroupFlowNode;

function TaskNodeView({ data }: NodeProps<TaskFlowNode>) {
  const { task, selected } = data;
  const running = task.state === 'running';
  return (
    <div
      className={`dag-node state-${task.state}${selected ? ' selected' : ''}`}
      data-testid={`task-node-${task.id}`}
      data-state={task.state}
      title={`${task.id} (${task.handler}) — ${task.state}`}
    >
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <div className="node-title">{task.id}</div>
      <div className="node-sub">
        {task.handler} · {task.state}
        {task.attempt > 1 ? ` · try ${task.attempt}` : ''}
      </div>
      {running && typeof task.progress === 'number' && (
        <div className="node-progress">
          <div style={{ width: `${Math.round(Math.min(1, Math.max(0, task.progress)) * 100)}%` }} />
        </div>
      )}
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
}

const SHOWN_COUNTS: TaskState[] = ['running', 'queued', 'pending', 'succeeded', 'failed', 'cancelled', 'skipped'];

function GroupNodeView({ data }: NodeProps<GroupFlowNode>) {
  const { label, handler, members, counts, state, selected } = data;
  return (
    <div
      className={`dag-node group-node state-${state}${selected ? ' selected' : ''}`}
      data-testid={`group-node-${members[0]}`}
      data-state={state}
      data-count={members.length}
      title={`${members.length} tasks with the same dependencies`}
    >
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <div className="node-title">
        {label} <span className="group-size">×{members.length}</span>
      </div>
      <div className="node-sub">
        {SHOWN_COUNTS.filter((s) => counts[s] > 0)
          .map((s) => `${counts[s]} ${s}`)
          .join(' · ') || handler}
      </div>
      <CountsBar counts={counts} total={members.length} />
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
}

export const nodeTypes = { task: memo(TaskNodeView), taskGroup: memo(GroupNodeView) };
