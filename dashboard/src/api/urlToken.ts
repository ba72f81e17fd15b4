// `apex up` prints the dashboard's address with its API token in it (`/?token=…`), so the
// first click opens a dashboard that is already signed in. The token is taken once,
// stored exactly as a typed one is (saveToken), and removed from the address bar, so it
// does not linger in history, bookmarks or screenshots. main.tsx calls this before the
// first render: no request goes out without the token, so no 401 prompt flashes.

import { saveToken } from './auth';

const PARAM = 'token';

/** The parts of `window` this module touches, so tests can pass fakes. */
export interface UrlTokenEnv {
  location: { pathname: string; search: string; hash: string };
  history: { state: unknown; replaceState(data: unknown, unused: string, url: string): void };
  save: (token: string) => void;
}

function paramName(pair: string): string {
  const raw = pair.split('=', 1)[0]!.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * The token a query string carries (its first `token` parameter), and the query string
 * without any `token` parameter. Every other parameter is kept byte for byte, not
 * re-encoded, so links built by other tools still mean what they meant.
 */
export function splitToken(search: string): { token: string | null; search: string } {
  const query = search.startsWith('?') ? search.slice(1) : search;
  if (!query) return { token: null, search };
  const token = new URLSearchParams(query).get(PARAM);
  if (token === null) return { token: null, search };
  const kept = query.split('&').filter((pair) => pair !== '' && paramName(pair) !== PARAM);
  return { token, search: kept.length ? `?${kept.join('&')}` : '' };
}

/** Takes a `?token=` from the address, if there is one; true when it did. */
export function adoptUrlToken(env?: UrlTokenEnv): boolean {
  const { location, history, save } = env ?? { location: window.location, history: window.history, save: saveToken };
  const { token, search } = splitToken(location.search);
  if (token === null) return false;
  save(token);
  history.replaceState(history.state, '', `${location.pathname}${search}${location.hash}`);
  return true;
}
