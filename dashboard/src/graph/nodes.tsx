// The two node kinds drawn on a run's graph. Each carries the stable test ids the e2e
// suite relies on: task-node-{taskId} / group-node-{firstMember}, with data-state.

import { memo } from 'react';
import { Handle, Position, type Node, type NodeProps } from '@xyflow/react';
import type { StateCounts, Task, TaskState, Usage } from '../api/types';
import { CountsBar } from '../components/CountsBar';
import { formatUsage, formatUsageLong } from '../usage';

export type TaskFlowNode = Node<{ task: Task; selected: boolean }, 'task'>;
export type GroupFlowNode = Node<
  {
    label: string;
    handler: string;
    members: string[];
    counts: StateCounts;
    state: TaskState;
    selected: boolean;
    usage: Usage;
    /** Room for a usage line (a group of agent tasks). */
    agents: boolean;
    /** Set on a group of spawned tasks: what spawned them (a task id, or a group's label). */
    spawnedBy: string | null;
  },
  // Not 'group': xyflow styles its own built-in group type under that name.
  'taskGroup'
>;
export type DagFlowNode = TaskFlowNode | GroupFlowNode;

function TaskNodeView({ data }: NodeProps<TaskFlowNode>) {
  const { task, selected } = data;
  const running = task.state === 'running';
  const usage = formatUsage(task.usage);
  const agent = task.agent ?? null;
  const title = `${task.id} (${agent ? `agent ${agent}` : task.handler}) — ${task.state}${usage ? `\n${formatUsageLong(task.usage)}` : ''}`;
  return (
    <div
      className={`dag-node state-${task.state}${selected ? ' selected' : ''}`}
      data-testid={`task-node-${task.id}`}
      data-state={task.state}
      data-agent={agent ?? undefined}
      title={title}
    >
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <div className="node-title">{task.id}</div>
      <div className="node-sub">
        {agent ? <span className="node-agent">{agent}</span> : task.handler} · {task.state}
        {task.attempt > 1 ? ` · try ${task.attempt}` : ''}
        {/* Agent nodes have a line of their own for usage; others rarely report any. */}
        {!agent && usage ? ` · ${usage}` : ''}
      </div>
      {agent && (
        <div className="node-usage" data-testid={`node-usage-${task.id}`}>
          {usage || '\u00a0'}
        </div>
      )}
      {running && typeof task.progress === 'number' && (
        <div className="node-progress">
          <div style={{ width: `${Math.round(Math.min(1, Math.max(0, task.progress)) * 100)}%` }} />
        </div>
      )}
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
}

const SHOWN_COUNTS: TaskState[] = ['running', 'waiting', 'queued', 'pending', 'succeeded', 'failed', 'cancelled', 'skipped'];

function GroupNodeView({ data }: NodeProps<GroupFlowNode>) {
  const { label, handler, members, counts, state, selected, usage, agents, spawnedBy } = data;
  const usageText = formatUsage(usage);
  const what = spawnedBy ? `${members.length} tasks spawned by ${spawnedBy}` : `${members.length} tasks with the same dependencies`;
  return (
    <div
      className={`dag-node group-node state-${state}${spawnedBy ? ' spawned-group' : ''}${selected ? ' selected' : ''}`}
      data-testid={`group-node-${members[0]}`}
      data-state={state}
      data-count={members.length}
      data-parent={spawnedBy ?? undefined}
      title={usageText ? `${what}\n${formatUsageLong(usage)}` : what}
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
      {agents && <div className="node-usage">{usageText || '\u00a0'}</div>}
      <CountsBar counts={counts} total={members.length} />
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
}

export const nodeTypes = { task: memo(TaskNodeView), taskGroup: memo(GroupNodeView) };
