export function StateBadge({ state, testId }: { state: string; testId?: string }) {
  return (
    <span className={`badge state-${state}`} data-state={state} data-testid={testId}>
      {state}
    </span>
  );
}
