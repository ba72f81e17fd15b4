// Side panel for one task: the live task (state, progress, timings, streamed answer) from
// the run's stream, merged with its fetched detail (input, upstream outputs, output,
// attempts, logs, usage).

import { useLayoutEffect, useRef } from 'react';
import type { Task, TaskDetail } from '../api/types';
import { JsonBlock } from '../components/JsonBlock';
import { StateBadge } from '../components/StateBadge';
import { formatDuration, formatTime, span } from '../format';
import type { LiveAnswer } from '../live/runReducer';
import { formatUsageLong, hasUsage, laterUsage } from '../usage';
import { RerunEditor } from './RerunEditor';
import { TaskActions } from './TaskActions';
import { useTaskDetail } from './useTaskDetail';

interface Props {
  runId: string;
  task: Task;
  touched: number;
  /** What the task's current attempt has streamed so far, if anything. */
  answer: LiveAnswer | null;
  /** Ids of the tasks this one spawned. */
  spawned: string[];
  /** Whether those are drawn one by one; null when they cannot be toggled from here. */
  spawnedExpanded: boolean | null;
  onExpandSpawned: (expand: boolean) => void;
  now: number;
  onClose: () => void;
  onSelectTask: (taskId: string) => void;
  /** Whether the run is still running, so a task of it may be decided or cancelled. */
  runRunning: boolean;
}

export function TaskPanel(props: Props) {
  const { runId, task, touched, answer, now, onClose, onSelectTask } = props;
  // Keyed on the task so switching tasks never shows the previous one's detail.
  const { detail: fetched, error } = useTaskDetail(runId, task.id, touched);
  const detail = fetched?.id === task.id ? fetched : null;
  const taskError = task.error ?? detail?.error ?? null;
  // Fast attempts can go queued → succeeded with no stored `running` event in between, so
  // the live task may lack a start time; a detail fetched at the same point has them all.
  const timed = detail && detail.state === task.state && detail.attempt === task.attempt ? detail : task;
  const usage = laterUsage(task.usage, detail?.usage);
  const agent = task.agent ?? detail?.agent ?? null;
  const parent = task.parent ?? detail?.parent ?? null;
  const streaming = task.state === 'running' && (!!agent || !!answer);

  return (
    <aside className="side-panel" data-testid="task-panel" data-task={task.id}>
      <header className="panel-header">
        <div>
          <h2 className="mono">{task.id}</h2>
          <div className="muted">
            {agent ? (
              <>
                agent <b data-testid="task-agent">{agent}</b>
              </>
            ) : (
              task.handler
            )}{' '}
            on <span className="mono">{task.queue}</span> · trigger {task.trigger}
          </div>
        </div>
        <button type="button" className="icon-button" onClick={onClose} aria-label="Close" data-testid="panel-close">
          ×
        </button>
      </header>

      <dl className="facts">
        <dt>State</dt>
        <dd>
          <StateBadge state={task.state} testId="task-state" />
        </dd>
        <dt>Attempt</dt>
        <dd>
          {task.attempt} <span className="muted">· {task.retries} {task.retries === 1 ? 'retry' : 'retries'} allowed</span>
        </dd>
        <dt>Worker</dt>
        <dd className="mono">{timed.worker_id ?? '—'}</dd>
        <dt>Queued</dt>
        <dd>{formatTime(timed.queued_at_ms)}</dd>
        <dt>Started</dt>
        <dd>{formatTime(timed.started_at_ms)}</dd>
        <dt>Finished</dt>
        <dd>{formatTime(timed.finished_at_ms)}</dd>
        <dt>Ran for</dt>
        <dd>{formatDuration(span(timed.started_at_ms, timed.finished_at_ms, now))}</dd>
        {hasUsage(usage) && (
          <>
            <dt>Usage</dt>
            <dd data-testid="task-usage">{formatUsageLong(usage)}</dd>
          </>
        )}
        {parent && (
          <>
            <dt>Spawned by</dt>
            <dd>
              <button type="button" className="link-button mono" onClick={() => onSelectTask(parent)} data-testid="task-parent">
                {parent}
              </button>
            </dd>
          </>
        )}
        <Spawned {...props} />
      </dl>

      <TaskActions runId={runId} task={task} input={detail?.input ?? task.input} runRunning={props.runRunning} />
      <RerunEditor runId={runId} taskId={task.id} input={detail?.input ?? task.input} runRunning={props.runRunning} />

      {streaming && <LiveAnswerView text={answer?.text ?? ''} truncated={!!answer?.truncated} />}

      {/* A streaming task shows its answer; a bar saying only "running" would add nothing. */}
      {task.state === 'running' && (!streaming || typeof task.progress === 'number' || !!task.progress_message) && (
        <section data-testid="task-progress">
          <h3>Progress</h3>
          <div className="progress">
            <div style={{ width: `${Math.round((task.progress ?? 0) * 100)}%` }} />
          </div>
          <div className="muted">
            {typeof task.progress === 'number' ? `${Math.round(task.progress * 100)}%` : 'running'}
            {task.progress_message ? ` — ${task.progress_message}` : ''}
          </div>
        </section>
      )}

      {error && <div className="error-box">Could not load task detail: {error.message}</div>}

      {taskError && (
        <section data-testid="task-error">
          <h3>Error</h3>
          <div className="error-box">
            <strong>{taskError.kind}</strong>
            {taskError.error_type ? ` ${taskError.error_type}` : ''}
            {taskError.message ? `: ${taskError.message}` : ''}
          </div>
          {taskError.traceback && (
            <pre className="traceback" data-testid="task-traceback">
              {taskError.traceback}
            </pre>
          )}
        </section>
      )}

      <section>
        <h3>Output</h3>
        {detail ? <JsonBlock value={detail.output} testId="task-output" /> : <Loading />}
      </section>

      <section>
        <h3>Input</h3>
        <JsonBlock value={detail?.input ?? task.input} testId="task-input" />
      </section>

      {task.depends_on.length > 0 && (
        <section data-testid="task-upstream">
          <h3>Upstream outputs</h3>
          {task.depends_on.map((dep) => (
            <div key={dep} className="upstream">
              <button type="button" className="link-button mono" onClick={() => onSelectTask(dep)}>
                {dep}
              </button>
              {detail ? <JsonBlock value={detail.upstream?.[dep] ?? null} /> : <Loading />}
            </div>
          ))}
        </section>
      )}

      {detail && <Attempts detail={detail} now={now} />}
      {detail && <Logs detail={detail} />}
    </aside>
  );
}

function Spawned({ spawned, spawnedExpanded, onExpandSpawned }: Props) {
  if (spawned.length === 0) return null;
  return (
    <>
      <dt>Spawned</dt>
      <dd data-testid="task-spawned" data-count={spawned.length}>
        {spawned.length} {spawned.length === 1 ? 'task' : 'tasks'}
        {spawnedExpanded !== null && (
          <>
            {' · '}
            <button type="button" className="link-button" onClick={() => onExpandSpawned(!spawnedExpanded)} data-testid="toggle-spawned">
              {spawnedExpanded ? 'group them' : 'show each'}
            </button>
          </>
        )}
      </dd>
    </>
  );
}

/** The streamed answer as it grows, kept scrolled to its end unless the reader scrolled up. */
function LiveAnswerView({ text, truncated }: { text: string; truncated: boolean }) {
  const box = useRef<HTMLPreElement>(null);
  const pinned = useRef(true);
  useLayoutEffect(() => {
    const el = box.current;
    if (el && pinned.current) el.scrollTop = el.scrollHeight;
  }, [text]);
  return (
    <section>
      <h3>Answer (live)</h3>
      {truncated && (
        <div className="muted" data-testid="task-answer-truncated">
          … the beginning is not shown (the whole text will be in the output)
        </div>
      )}
      <pre
        ref={box}
        className="live-answer"
        data-testid="task-answer"
        onScroll={(e) => {
          const el = e.currentTarget;
          pinned.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {text || <span className="muted">waiting for the model…</span>}
      </pre>
    </section>
  );
}

function Loading() {
  return <div className="muted">loading…</div>;
}

function Attempts({ detail, now }: { detail: TaskDetail; now: number }) {
  if (!detail.attempts?.length) return null;
  return (
    <section>
      <h3>Attempts</h3>
      <table className="table compact" data-testid="task-attempts">
        <thead>
          <tr>
            <th>#</th>
            <th>Outcome</th>
            <th>Worker</th>
            <th>Waited</th>
            <th>Ran</th>
          </tr>
        </thead>
        <tbody>
          {detail.attempts.map((a) => (
            <tr key={a.attempt} title={a.error?.message ?? undefined}>
              <td>{a.attempt}</td>
              <td>{a.outcome ? <StateBadge state={a.outcome} /> : <span className="muted">in flight</span>}</td>
              <td className="mono ellipsis">{a.worker_id ?? '—'}</td>
              <td>{formatDuration(span(a.queued_at_ms, a.started_at_ms ?? a.finished_at_ms, now))}</td>
              <td>{formatDuration(span(a.started_at_ms, a.finished_at_ms, now))}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Logs({ detail }: { detail: TaskDetail }) {
  if (!detail.logs?.length) return null;
  return (
    <section>
      <h3>Logs</h3>
      <ol className="logs" data-testid="task-logs">
        {detail.logs.map((line, i) => (
          <li key={i} className={`log-${line.level}`}>
            <span className="muted">{formatTime(line.at_ms)}</span> <span className="log-level">{line.level}</span>{' '}
            {line.attempt > 1 && <span className="muted">[try {line.attempt}] </span>}
            {line.message}
          </li>
        ))}
      </ol>
    </section>
  );
}
