import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { adoptUrlToken } from './api/urlToken';
import { App } from './App';
import './styles.css';

// Before anything renders: the first request must already carry a token from the address.
adoptUrlToken();

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
