import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { ApiError } from '../api/client';
import type { RunHead, RunSummary } from '../api/types';
import { useNow } from '../clock';
import { DagView, type Selection } from '../graph/DagView';
import { buildGraph, DEFAULT_MIN_GROUP, isSpawnedGroupId, type GroupNodeSpec } from '../graph/grouping';
import { countStates, type TaskSpec } from '../live/runReducer';
import { TaskTable } from '../live/taskTable';
import { useRunLive, type RunLive } from '../live/useRunLive';
import { GroupPanel } from '../run/GroupPanel';
import { RunHeader } from '../run/RunHeader';
import { RunTaskTable } from '../run/RunTaskTable';
import { TaskPanel } from '../run/TaskPanel';
import { useGroupRows } from '../run/useGroupRows';
import { defaultViewMode, TABLE_FIRST_TASKS, ViewToggle, type RunViewMode } from '../run/ViewToggle';
import { sumUsage } from '../usage';

/** Spawned task ids by the id of the task that spawned them, in submission order. */
function childrenByParent(specs: TaskSpec[]): Map<string, string[]> {
  const children = new Map<string, string[]>();
  for (const spec of specs) {
    if (!spec.parent) continue;
    let list = children.get(spec.parent);
    if (!list) children.set(spec.parent, (list = []));
    list.push(spec.id);
  }
  return children;
}

export function RunPage({ runId }: { runId: string }) {
  const live = useRunLive(runId);
  // The summary arrives before the tasks: enough for the header while they load.
  const summary = live.view.summary ?? live.loading?.summary ?? null;
  if (!summary) {
    const { error } = live;
    return (
      <div className="page">
        {error ? (
          <div className="error-box" data-testid="run-error">
            {error instanceof ApiError && error.status === 404 ? `No run with id ${runId}.` : `Could not load run: ${error.message}`}
          </div>
        ) : (
          <div className="muted">Loading run…</div>
        )}
      </div>
    );
  }
  return <RunBody runId={runId} live={live} summary={summary} />;
}

/** The page once the run's summary is in; its size at that moment picks the first view. */
function RunBody({ runId, live, summary }: { runId: string; live: RunLive; summary: RunHead }) {
  const { view, loading, status, dispatch, partial, setVisible } = live;
  const [mode, setMode] = useState<RunViewMode>(() => defaultViewMode(summary.task_count));
  const [selection, setSelection] = useState<Selection>(null);
  const [collapse, setCollapse] = useState(true);
  /** Nodes whose spawned children are drawn one by one instead of as a group. */
  const [expanded, setExpanded] = useState<ReadonlySet<string>>(() => new Set());
  const now = useNow();
  // Past the threshold the graph is always grouped: thousands of nodes would not stay responsive.
  const big = summary.task_count > TABLE_FIRST_TASKS;
  const grouped = collapse || big;
  // Built only while the graph is shown: at 100,000 tasks this is real work the table does not need.
  const model = useMemo(
    () => (mode === 'graph' ? buildGraph(view.specs, { collapse: grouped, minGroupSize: DEFAULT_MIN_GROUP, expanded }) : null),
    [mode, view.specs, grouped, expanded],
  );
  // While pages of tasks arrive, the table shows them as they were read; live once all are in.
  const loadingTable = useMemo(() => (loading ? TaskTable.of(loading.tasks) : null), [loading]);
  const tasks = view.summary ? view.tasks : (loadingTable ?? TaskTable.EMPTY);
  const counts = useMemo(() => view.summary?.counts ?? countStates(tasks.values()), [view.summary, tasks]);
  const children = useMemo(() => childrenByParent(view.specs), [view.specs]);
  const selectedGroup = useMemo(() => {
    if (selection?.kind !== 'group' || !model) return null;
    const node = model.nodes.find((n) => n.id === selection.nodeId);
    return node?.kind === 'group' ? (node as GroupNodeSpec) : null;
  }, [model, selection]);
  // A server that reports run usage at all is taken at its word; for older ones, the sum
  // of the tasks we hold (not redone per event when the server gives the total).
  const tasksForUsage = summary.usage === undefined ? view.tasks : null;
  const runUsage = useMemo(
    () => (tasksForUsage ? sumUsage(tasksForUsage.values().map((t) => t.usage)) : summary.usage),
    [tasksForUsage, summary.usage],
  );

  const running = summary.state === 'running';
  // A big run's graph groups: their members are not followed by the stream, so read again.
  const groupsShown = partial && mode === 'graph' && !!model?.nodes.some((n) => n.kind === 'group');
  useGroupRows({
    runId,
    enabled: groupsShown,
    live: running,
    taskCount: summary.task_count,
    tasks: view.tasks,
    dispatch,
    resyncs: view.refetchWanted,
  });

  const act = useCallback(
    async (call: (id: string) => Promise<RunSummary>) => {
      const run = await call(runId);
      dispatch({ type: 'summary', run });
    },
    [runId, dispatch],
  );
  const selectTask = useCallback((taskId: string) => setSelection({ kind: 'task', taskId }), []);

  // What a big run's stream follows: the rows on screen, or the tasks the graph draws one
  // by one (its groups are drawn from the states we hold), and the task whose panel is open.
  // The table reports its rows on every scrolled frame: kept in a ref, not redrawn for.
  const tableRows = useRef<readonly string[]>([]);
  const drawnTasks = useMemo(() => (model ? model.nodes.flatMap((n) => (n.kind === 'task' ? [n.taskId] : [])) : []), [model]);
  const selectedId = selection?.kind === 'task' ? selection.taskId : null;
  const follow = useCallback(() => {
    const shown = mode === 'table' ? tableRows.current : drawnTasks;
    setVisible(selectedId && !shown.includes(selectedId) ? [selectedId, ...shown] : shown);
  }, [mode, drawnTasks, selectedId, setVisible]);
  useEffect(follow, [follow]);
  const onTableRows = useCallback(
    (ids: readonly string[]) => {
      tableRows.current = ids;
      follow();
    },
    [follow],
  );
  const partialTable = useMemo(() => (partial ? { runId, dispatch, running } : null), [partial, runId, dispatch, running]);

  const selectedTask = selection?.kind === 'task' ? tasks.get(selection.taskId) : undefined;
  const setChildrenExpanded = (parentNode: string, open: boolean) =>
    setExpanded((current) => {
      const next = new Set(current);
      if (open) next.add(parentNode);
      else next.delete(parentNode);
      return next;
    });
  // The key under which a task's spawned children are expanded: the node that draws it.
  // A task drawn inside a spawned group takes its children along: no key of its own; and
  // the table draws no groups at all.
  const spawnKey = (taskId: string) => {
    const node = model?.nodeOf.get(taskId);
    return grouped && node && !isSpawnedGroupId(node) ? node : null;
  };

  return (
    <div className="run-page">
      <RunHeader summary={summary} status={status} usage={runUsage} now={now} act={act} />
      <div className="run-toolbar">
        <ViewToggle mode={mode} onChange={setMode} />
        {model && !big && (!collapse || model.nodes.some((n) => n.kind === 'group')) && (
          <label className="collapse-toggle">
            <input type="checkbox" checked={collapse} onChange={(e) => setCollapse(e.target.checked)} data-testid="collapse-toggle" />{' '}
            Group fan-outs and spawned tasks
          </label>
        )}
        {model && big && <span className="muted">Grouped: {summary.task_count.toLocaleString()} tasks are too many to draw one by one.</span>}
      </div>
      <div className="run-body">
        <div className="run-graph">
          {mode === 'table' ? (
            <RunTaskTable
              tasks={tasks}
              counts={counts}
              loadingOf={view.summary ? null : summary.task_count}
              selected={selection?.kind === 'task' ? selection.taskId : null}
              onSelect={selectTask}
              now={now}
              partial={partialTable}
              onVisible={onTableRows}
            />
          ) : model && view.summary ? (
            // A new layout (grouping toggled, another DAG) deserves a fresh fit to view.
            <DagView key={String(grouped)} model={model} tasks={view.tasks} selection={selection} onSelect={setSelection} />
          ) : (
            <div className="empty" data-testid="run-loading">
              Loading tasks… {tasks.size.toLocaleString()} of {summary.task_count.toLocaleString()}
            </div>
          )}
        </div>
        {selectedTask && (
          <TaskPanel
            key={selectedTask.id}
            runId={runId}
            task={selectedTask}
            touched={tasks.touched(selectedTask.id)}
            answer={view.answers[selectedTask.id] ?? null}
            spawned={children.get(selectedTask.id) ?? []}
            spawnedExpanded={spawnKey(selectedTask.id) === null ? null : expanded.has(spawnKey(selectedTask.id)!)}
            onExpandSpawned={(open) => {
              const key = spawnKey(selectedTask.id);
              if (key) setChildrenExpanded(key, open);
            }}
            now={now}
            onClose={() => setSelection(null)}
            onSelectTask={selectTask}
            runRunning={summary.state === 'running'}
          />
        )}
        {selectedGroup && model && (
          <GroupPanel
            label={selectedGroup.label}
            members={selectedGroup.members}
            tasks={view.tasks}
            spawnedBy={selectedGroup.spawnedBy?.label ?? null}
            onExpand={
              selectedGroup.spawnedBy
                ? () => {
                    const parent = selectedGroup.spawnedBy!;
                    setChildrenExpanded(parent.node, true);
                    // The group is gone once expanded; its parent's panel can fold it back.
                    const node = model.nodes.find((n) => n.id === parent.node);
                    setSelection(node?.kind === 'task' ? { kind: 'task', taskId: node.taskId } : null);
                  }
                : null
            }
            onClose={() => setSelection(null)}
            onSelectTask={selectTask}
          />
        )}
      </div>
    </div>
  );
}
