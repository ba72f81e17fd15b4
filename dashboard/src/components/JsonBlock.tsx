import { useState } from 'react';
import { formatJson } from '../format';

export function JsonBlock({ value, testId }: { value: unknown; testId?: string }) {
  const [full, setFull] = useState(false);
  const { text, truncated } = formatJson(value, full ? Number.POSITIVE_INFINITY : 100_000);
  return (
    <>
      <pre className="json" data-testid={testId}>
        {text}
      </pre>
      {truncated && (
        <button type="button" className="link-button" onClick={() => setFull(true)}>
          Show all
        </button>
      )}
    </>
  );
}
