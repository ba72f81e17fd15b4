// A tiny history router: six pages do not need a routing library. The server falls back
// to index.html for unknown paths, so every route is also a deep link.

import { useSyncExternalStore, type AnchorHTMLAttributes, type MouseEvent } from 'react';

export type Route =
  | { page: 'runs' }
  | { page: 'run'; runId: string }
  | { page: 'workers' }
  | { page: 'queues' }
  | { page: 'agents' }
  | { page: 'templates' }
  | { page: 'schedules' }
  | { page: 'submit' }
  | { page: 'not_found'; path: string };

export function parseRoute(pathname: string): Route {
  const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { page: 'runs' };
  const [head, id, ...rest] = parts;
  if (head === 'runs' && !id) return { page: 'runs' };
  if (head === 'runs' && id && rest.length === 0) return { page: 'run', runId: id };
  if (
    parts.length === 1 &&
    (head === 'workers' || head === 'queues' || head === 'agents' || head === 'templates' || head === 'schedules' || head === 'submit')
  )
    return { page: head };
  return { page: 'not_found', path: pathname };
}

export const runPath = (runId: string) => `/runs/${encodeURIComponent(runId)}`;

const NAVIGATE = 'apex:navigate';

function subscribe(onChange: () => void): () => void {
  window.addEventListener('popstate', onChange);
  window.addEventListener(NAVIGATE, onChange);
  return () => {
    window.removeEventListener('popstate', onChange);
    window.removeEventListener(NAVIGATE, onChange);
  };
}

export function usePathname(): string {
  return useSyncExternalStore(subscribe, () => window.location.pathname);
}

export function navigate(path: string): void {
  if (path === window.location.pathname) return;
  window.history.pushState(null, '', path);
  window.dispatchEvent(new Event(NAVIGATE));
}

type LinkProps = AnchorHTMLAttributes<HTMLAnchorElement> & { to: string };

export function Link({ to, onClick, ...rest }: LinkProps) {
  const handle = (event: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(event);
    // Let the browser handle new-tab and modified clicks.
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(to);
  };
  return <a href={to} onClick={handle} {...rest} />;
}
