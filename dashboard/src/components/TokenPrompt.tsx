import { useState, type FormEvent } from 'react';
import { getToken, saveToken } from '../api/auth';

/** Shown when the API answered 401: the server was started with an API token. */
export function TokenPrompt() {
  const [token, setToken] = useState(() => getToken() ?? '');
  const submit = (event: FormEvent) => {
    event.preventDefault();
    saveToken(token);
  };
  return (
    <div className="modal-backdrop">
      <form className="modal" onSubmit={submit} data-testid="token-prompt">
        <h2>API token required</h2>
        <p>
          This server requires a bearer token (<code>APEX_API_TOKEN</code>). It is kept in this browser&apos;s local
          storage.
        </p>
        <input
          type="password"
          autoFocus
          value={token}
          onChange={(e) => setToken(e.target.value)}
          placeholder="token"
          data-testid="token-input"
        />
        <div className="modal-actions">
          <button type="submit" className="primary" data-testid="token-save">
            Save token
          </button>
        </div>
      </form>
    </div>
  );
}
