import { useSyncExternalStore } from 'react';
import { getAuth, subscribeAuth } from './api/auth';
import { ErrorBoundary } from './components/ErrorBoundary';
import { TokenPrompt } from './components/TokenPrompt';
import { OverviewProvider } from './live/OverviewProvider';
import { AgentsPage } from './pages/AgentsPage';
import { QueuesPage } from './pages/QueuesPage';
import { RunPage } from './pages/RunPage';
import { RunsPage } from './pages/RunsPage';
import { SchedulesPage } from './pages/SchedulesPage';
import { SubmitPage } from './pages/SubmitPage';
import { TemplatesPage } from './pages/TemplatesPage';
import { WorkersPage } from './pages/WorkersPage';
import { Link, parseRoute, usePathname, type Route } from './router';

const NAV: { to: string; label: string; pages: Route['page'][] }[] = [
  { to: '/runs', label: 'Runs', pages: ['runs', 'run'] },
  { to: '/workers', label: 'Workers', pages: ['workers'] },
  { to: '/queues', label: 'Queues', pages: ['queues'] },
  { to: '/agents', label: 'Agents', pages: ['agents'] },
  { to: '/templates', label: 'Templates', pages: ['templates'] },
  { to: '/schedules', label: 'Schedules', pages: ['schedules'] },
  { to: '/submit', label: 'Submit', pages: ['submit'] },
];

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case 'runs':
      return <RunsPage />;
    case 'run':
      return <RunPage key={route.runId} runId={route.runId} />;
    case 'workers':
      return <WorkersPage />;
    case 'queues':
      return <QueuesPage />;
    case 'agents':
      return <AgentsPage />;
    case 'templates':
      return <TemplatesPage />;
    case 'schedules':
      return <SchedulesPage />;
    case 'submit':
      return <SubmitPage />;
    case 'not_found':
      return (
        <div className="page">
          <h1>Not found</h1>
          <p>
            Nothing at <code>{route.path}</code>. <Link to="/runs">Back to runs</Link>
          </p>
        </div>
      );
  }
}

export function App() {
  const route = parseRoute(usePathname());
  const auth = useSyncExternalStore(subscribeAuth, getAuth);
  return (
    // A new token remounts everything below, so every request and socket starts over with it.
    <OverviewProvider key={auth.epoch}>
      <div className="shell">
        <nav className="nav">
          <Link to="/runs" className="brand">
            Apex
          </Link>
          {NAV.map((item) => (
            <Link
              key={item.to}
              to={item.to}
              className={item.pages.includes(route.page) ? 'active' : undefined}
              data-testid={`nav-${item.label.toLowerCase()}`}
            >
              {item.label}
            </Link>
          ))}
        </nav>
        <main className="main">
          <ErrorBoundary key={route.page}>
            <Page route={route} />
          </ErrorBoundary>
        </main>
      </div>
      {auth.needed && <TokenPrompt />}
    </OverviewProvider>
  );
}
