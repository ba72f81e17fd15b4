// The run's DAG on an xyflow canvas. Structure (grouping, layout) is computed once per
// DAG shape; each live update only rebuilds the node/edge objects, and xyflow renders
// just those in view.

import { useEffect, useMemo, useRef, type RefObject } from 'react';
import { Background, Controls, MiniMap, ReactFlow, useReactFlow, useStore, type Edge } from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import type { TaskState } from '../api/types';
import type { TaskLookup } from '../live/taskTable';
import type { GraphModel } from './grouping';
import { dominantState, memberCounts, memberUsage } from './groupState';
import { layoutGraph, nodeSize } from './layout';
import { nodeTypes, type DagFlowNode } from './nodes';

export type Selection = { kind: 'task'; taskId: string } | { kind: 'group'; nodeId: string } | null;

interface Props {
  model: GraphModel;
  tasks: TaskLookup;
  selection: Selection;
  onSelect: (selection: Selection) => void;
}

const STATE_COLORS: Record<TaskState, string> = {
  pending: '#9ca3af',
  ready: '#a78bfa',
  queued: '#60a5fa',
  running: '#f59e0b',
  waiting: '#ec4899',
  succeeded: '#22c55e',
  failed: '#ef4444',
  cancelled: '#6b7280',
  skipped: '#d1d5db',
};

function buildFlowNodes(
  model: GraphModel,
  positions: Map<string, { x: number; y: number }>,
  tasks: TaskLookup,
  selection: Selection,
): { nodes: DagFlowNode[]; stateOf: Map<string, TaskState> } {
  const stateOf = new Map<string, TaskState>();
  const nodes: DagFlowNode[] = [];
  for (const spec of model.nodes) {
    const position = positions.get(spec.id) ?? { x: 0, y: 0 };
    const { width, height } = nodeSize(spec);
    if (spec.kind === 'task') {
      const task = tasks.get(spec.taskId);
      if (!task) continue;
      stateOf.set(spec.id, task.state);
      const selected = selection?.kind === 'task' && selection.taskId === spec.taskId;
      nodes.push({ id: spec.id, type: 'task', position, width, height, data: { task, selected } });
    } else {
      const counts = memberCounts(spec.members, tasks);
      const state = dominantState(counts);
      stateOf.set(spec.id, state);
      const selected = selection?.kind === 'group' && selection.nodeId === spec.id;
      nodes.push({
        id: spec.id,
        type: 'taskGroup',
        position,
        width,
        height,
        data: {
          label: spec.label,
          handler: spec.handler,
          members: spec.members,
          counts,
          state,
          selected,
          usage: memberUsage(spec.members, tasks),
          agents: spec.agents,
          spawnedBy: spec.spawnedBy?.label ?? null,
        },
      });
    }
  }
  return { nodes, stateOf };
}

function buildFlowEdges(model: GraphModel, stateOf: Map<string, TaskState>): Edge[] {
  return model.edges.map((edge) => {
    const from = stateOf.get(edge.source);
    const to = stateOf.get(edge.target);
    // Data has flowed once the source succeeded; it is being consumed while the target runs.
    const delivered = from === 'succeeded';
    return {
      id: edge.id,
      source: edge.source,
      target: edge.target,
      animated: delivered && to === 'running',
      className: delivered ? 'edge-delivered' : 'edge-waiting',
    };
  });
}

const FIT_OPTIONS = { padding: 0.15, maxZoom: 1.2 };
const MINIMAP_MAX_NODES = 1_000;

/**
 * Refits the graph when its pane changes size (the side panel opens or closes) or the graph
 * grows (spawned tasks appear, a group is expanded), until the user pans or zooms: from
 * then on the viewport is theirs.
 */
function RefitOnChange({ userMoved, model }: { userMoved: RefObject<boolean>; model: GraphModel }) {
  const { fitView } = useReactFlow();
  const width = useStore((s) => s.width);
  const height = useStore((s) => s.height);
  useEffect(() => {
    if (userMoved.current || width <= 0 || height <= 0) return;
    // After xyflow has measured the new nodes, or the fit would ignore them.
    const frame = requestAnimationFrame(() => void fitView(FIT_OPTIONS));
    return () => cancelAnimationFrame(frame);
  }, [width, height, model, fitView, userMoved]);
  return null;
}

export function DagView({ model, tasks, selection, onSelect }: Props) {
  const userMoved = useRef(false);
  const positions = useMemo(() => layoutGraph(model), [model]);
  const { nodes, stateOf } = useMemo(() => buildFlowNodes(model, positions, tasks, selection), [model, positions, tasks, selection]);
  const edges = useMemo(() => buildFlowEdges(model, stateOf), [model, stateOf]);

  return (
    <div className="dag" data-testid="dag" data-nodes={model.nodes.length}>
      <ReactFlow
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        onlyRenderVisibleElements
        nodesDraggable={false}
        nodesConnectable={false}
        elementsSelectable={false}
        nodesFocusable={false}
        edgesFocusable={false}
        fitView
        fitViewOptions={FIT_OPTIONS}
        onMove={(event) => {
          // Programmatic moves (fitView) carry no event; a click without a drag makes no move.
          if (event) userMoved.current = true;
        }}
        minZoom={0.05}
        maxZoom={2}
        onNodeClick={(_, node) =>
          onSelect(node.type === 'task' ? { kind: 'task', taskId: node.data.task.id } : { kind: 'group', nodeId: node.id })
        }
        onPaneClick={() => onSelect(null)}
      >
        <RefitOnChange userMoved={userMoved} model={model} />
        <Background gap={24} />
        <Controls showInteractive={false} />
        {/* The minimap draws every node, unculled: worth it for mid-sized graphs only. */}
        {model.nodes.length > 30 && model.nodes.length <= MINIMAP_MAX_NODES && (
          <MiniMap
            pannable
            zoomable
            nodeColor={(node) => STATE_COLORS[stateOf.get(node.id) ?? 'pending']}
          />
        )}
      </ReactFlow>
    </div>
  );
}
