// The API token lives in localStorage so a reload keeps it. A 401 anywhere flips
// `needed`, which the app turns into a prompt; saving a token bumps `epoch`, which the
// app uses to remount pages so every request and socket starts again with the token.

const STORAGE_KEY = 'apex.token';

export interface AuthState {
  token: string | null;
  needed: boolean;
  epoch: number;
}

type Listener = (state: AuthState) => void;

let state: AuthState = { token: readStoredToken(), needed: false, epoch: 0 };
const listeners = new Set<Listener>();

function readStoredToken(): string | null {
  try {
    return globalThis.localStorage?.getItem(STORAGE_KEY) ?? null;
  } catch {
    return null;
  }
}

function publish(next: AuthState): void {
  state = next;
  for (const listener of listeners) listener(state);
}

export function getAuth(): AuthState {
  return state;
}

export function getToken(): string | null {
  return state.token;
}

export function subscribeAuth(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function markUnauthorized(): void {
  if (!state.needed) publish({ ...state, needed: true });
}

export function saveToken(token: string): void {
  const trimmed = token.trim();
  try {
    if (trimmed) localStorage.setItem(STORAGE_KEY, trimmed);
    else localStorage.removeItem(STORAGE_KEY);
  } catch {
    // Private mode or disabled storage: the token still works for this page's lifetime.
  }
  publish({ token: trimmed || null, needed: false, epoch: state.epoch + 1 });
}
