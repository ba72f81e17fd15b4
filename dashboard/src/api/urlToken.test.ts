import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { getAuth, getToken, saveToken } from './auth';
import { adoptUrlToken, splitToken, type UrlTokenEnv } from './urlToken';

/** A browser address and history that record what the code under test does. */
function fakeEnv(href: string, save: (token: string) => void = saveToken) {
  const url = new URL(href, 'http://127.0.0.1:8080');
  const location = { pathname: url.pathname, search: url.search, hash: url.hash };
  const replaced: { data: unknown; url: string }[] = [];
  const history = {
    state: { from: 'router' },
    replaceState(data: unknown, _unused: string, next: string) {
      replaced.push({ data, url: next });
    },
  };
  const env: UrlTokenEnv = { location, history, save };
  return { env, replaced };
}

function memoryStorage() {
  const items = new Map<string, string>();
  return {
    getItem: (key: string) => items.get(key) ?? null,
    setItem: (key: string, value: string) => void items.set(key, value),
    removeItem: (key: string) => void items.delete(key),
    items,
  };
}

describe('splitToken', () => {
  it('takes the token and keeps every other parameter exactly as written', () => {
    expect(splitToken('?a=1&token=s3cret&b=x%20y+z&c')).toEqual({ token: 's3cret', search: '?a=1&b=x%20y+z&c' });
  });

  it('leaves a query without a token alone', () => {
    expect(splitToken('?a=1&tokens=2')).toEqual({ token: null, search: '?a=1&tokens=2' });
    expect(splitToken('')).toEqual({ token: null, search: '' });
  });

  it('decodes the token and drops every token parameter, however encoded', () => {
    expect(splitToken('?to%6Ben=a%2Bb&token=second')).toEqual({ token: 'a+b', search: '' });
  });
});

describe('adoptUrlToken', () => {
  let storage: ReturnType<typeof memoryStorage>;
  beforeEach(() => {
    storage = memoryStorage();
    vi.stubGlobal('localStorage', storage);
  });
  afterEach(() => {
    saveToken('');
    vi.unstubAllGlobals();
  });

  it('stores the token as a typed one is and removes it from the address, keeping path, query and hash', () => {
    const { env, replaced } = fakeEnv('/runs/r1?view=table&token=%20abc123%20&x=1#task-7');
    const epoch = getAuth().epoch;
    expect(adoptUrlToken(env)).toBe(true);
    // saveToken trims, stores under apex.token and bumps the epoch, as the prompt does.
    expect(storage.items.get('apex.token')).toBe('abc123');
    expect(getToken()).toBe('abc123');
    expect(getAuth()).toMatchObject({ needed: false, epoch: epoch + 1 });
    expect(replaced).toEqual([{ data: { from: 'router' }, url: '/runs/r1?view=table&x=1#task-7' }]);
  });

  it('leaves a bare ?token= address with just its path', () => {
    const { env, replaced } = fakeEnv('/?token=abc');
    adoptUrlToken(env);
    expect(replaced.map((r) => r.url)).toEqual(['/']);
  });

  it('does nothing, and stores nothing, when the address has no token', () => {
    const save = vi.fn();
    const { env, replaced } = fakeEnv('/runs?state=failed', save);
    expect(adoptUrlToken(env)).toBe(false);
    expect(save).not.toHaveBeenCalled();
    expect(replaced).toEqual([]);
  });

  it('happens once: the address it leaves has no token to take again', () => {
    const save = vi.fn();
    const { env, replaced } = fakeEnv('/?token=abc', save);
    adoptUrlToken(env);
    const again = fakeEnv(replaced[0]!.url, save);
    expect(adoptUrlToken(again.env)).toBe(false);
    expect(save).toHaveBeenCalledTimes(1);
  });
});
