import { useCallback, useMemo, useState } from 'react';
import { api, ApiError } from '../api/client';
import type { RunSummary } from '../api/types';
import { useNow } from '../clock';
import { CountsBar } from '../components/CountsBar';
import { LiveIndicator } from '../components/LiveIndicator';
import { StateBadge } from '../components/StateBadge';
import { formatDuration, formatTime, span } from '../format';
import { DagView, type Selection } from '../graph/DagView';
import { buildGraph, DEFAULT_MIN_GROUP, isSpawnedGroupId, type GroupNodeSpec } from '../graph/grouping';
import { doneCount, type TaskSpec } from '../live/runReducer';
import { useRunLive } from '../live/useRunLive';
import { GroupPanel } from '../run/GroupPanel';
import { TaskPanel } from '../run/TaskPanel';
import { Link } from '../router';
import { formatUsage, formatUsageLong, hasUsage, sumUsage } from '../usage';

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
  const { view, status, error, dispatch } = useRunLive(runId);
  const [selection, setSelection] = useState<Selection>(null);
  const [collapse, setCollapse] = useState(true);
  /** Nodes whose spawned children are drawn one by one instead of as a group. */
  const [expanded, setExpanded] = useState<ReadonlySet<string>>(() => new Set());
  const now = useNow();
  const summary = view.summary;
  const model = useMemo(
    () => buildGraph(view.specs, { collapse, minGroupSize: DEFAULT_MIN_GROUP, expanded }),
    [view.specs, collapse, expanded],
  );
  const children = useMemo(() => childrenByParent(view.specs), [view.specs]);
  const selectedGroup = useMemo(() => {
    if (selection?.kind !== 'group') return null;
    const node = model.nodes.find((n) => n.id === selection.nodeId);
    return node?.kind === 'group' ? (node as GroupNodeSpec) : null;
  }, [model, selection]);
  // The summary's total when the server sends one; else what the tasks we hold add up to.
  const runUsage = useMemo(
    () => (hasUsage(summary?.usage) ? summary.usage : sumUsage(Object.values(view.tasks).map((t) => t.usage))),
    [summary, view.tasks],
  );

  const act = useCallback(
    async (call: (id: string) => Promise<RunSummary>) => {
      const run = await call(runId);
      dispatch({ type: 'summary', run });
    },
    [runId, dispatch],
  );

  if (!summary) {
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

  const done = doneCount(summary.counts);
  const selectTask = (taskId: string) => setSelection({ kind: 'task', taskId });
  const selectedTask = selection?.kind === 'task' ? view.tasks[selection.taskId] : undefined;
  const setChildrenExpanded = (parentNode: string, open: boolean) =>
    setExpanded((current) => {
      const next = new Set(current);
      if (open) next.add(parentNode);
      else next.delete(parentNode);
      return next;
    });
  // The key under which a task's spawned children are expanded: the node that draws it.
  // A task drawn inside a spawned group takes its children along: no key of its own.
  const spawnKey = (taskId: string) => {
    const node = model.nodeOf.get(taskId);
    return collapse && node && !isSpawnedGroupId(node) ? node : null;
  };

  return (
    <div className="run-page">
      <header className="run-header">
        <div className="run-title">
          <Link to="/runs" className="muted">
            Runs
          </Link>
          <span className="muted"> / </span>
          <h1 data-testid="run-name">{summary.name || summary.id}</h1>
          <StateBadge state={summary.state} testId="run-state" />
          <LiveIndicator status={status} />
        </div>
        <div className="run-meta">
          <span className="mono muted" data-testid="run-id">
            {summary.id}
          </span>
          <span>
            <b data-testid="run-progress">
              {done}/{summary.task_count}
            </b>{' '}
            done
          </span>
          {summary.counts.failed > 0 && <span className="text-failed">{summary.counts.failed} failed</span>}
          {hasUsage(runUsage) && (
            <span data-testid="run-usage" title={formatUsageLong(runUsage)}>
              {formatUsage(runUsage)}
            </span>
          )}
          <span>created {formatTime(summary.created_at_ms)}</span>
          <span>{formatDuration(span(summary.created_at_ms, summary.finished_at_ms, now))}</span>
          <div className="run-progress-bar">
            <CountsBar counts={summary.counts} total={summary.task_count} />
          </div>
          <RunActions summary={summary} act={act} />
        </div>
        <RunError summary={summary} />
      </header>
      <div className="run-body">
        <div className="run-graph">
          {(!collapse || model.nodes.some((n) => n.kind === 'group')) && (
            <label className="collapse-toggle">
              <input
                type="checkbox"
                checked={collapse}
                onChange={(e) => setCollapse(e.target.checked)}
                data-testid="collapse-toggle"
              />{' '}
              Group fan-outs and spawned tasks
            </label>
          )}
          {/* A new layout (collapse toggled, another DAG) deserves a fresh fit to view. */}
          <DagView key={String(collapse)} model={model} tasks={view.tasks} selection={selection} onSelect={setSelection} />
        </div>
        {selectedTask && (
          <TaskPanel
            key={selectedTask.id}
            runId={runId}
            task={selectedTask}
            touched={view.touched[selectedTask.id] ?? 0}
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
          />
        )}
        {selectedGroup && (
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

function RunError({ summary }: { summary: RunSummary }) {
  if (!summary.error) return null;
  const text = typeof summary.error === 'string' ? summary.error : summary.error.message ?? summary.error.kind;
  return <div className="error-box">{text}</div>;
}

function RunActions({ summary, act }: { summary: RunSummary; act: (call: (id: string) => Promise<RunSummary>) => Promise<void> }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const run = (call: (id: string) => Promise<RunSummary>) => {
    setBusy(true);
    setError(null);
    act(call)
      .catch((err: unknown) => setError(err instanceof Error ? err.message : String(err)))
      .finally(() => setBusy(false));
  };
  const retryable = summary.state === 'failed' || summary.state === 'cancelled';
  return (
    <div className="run-actions">
      <button
        type="button"
        className="danger"
        disabled={busy || summary.state !== 'running'}
        onClick={() => run(api.cancelRun)}
        data-testid="cancel-run"
      >
        Cancel
      </button>
      <button type="button" disabled={busy || !retryable} onClick={() => run(api.retryRun)} data-testid="retry-run">
        Retry failed
      </button>
      {error && (
        <span className="text-failed" data-testid="run-action-error">
          {error}
        </span>
      )}
    </div>
  );
}
