import type { SocketStatus } from '../live/socket';

const LABELS: Record<SocketStatus, string> = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  closed: 'offline',
};

export function LiveIndicator({ status }: { status: SocketStatus }) {
  return (
    <span className={`live live-${status}`} data-testid="live-status" data-status={status}>
      <span className="live-dot" />
      {LABELS[status]}
    </span>
  );
}
