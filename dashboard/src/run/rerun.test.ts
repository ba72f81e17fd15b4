import { describe, expect, it } from 'vitest';
import { rerunBody } from './rerun';

describe('re-run from a task', () => {
  it('sends the edited input as an override of that task only', () => {
    const { body } = rerunBody('critique', { prompt: 'a' }, '{"prompt": "b", "n": 2}');
    expect(body).toEqual({ from: ['critique'], overrides: { tasks: { critique: { input: { prompt: 'b', n: 2 } } } } });
  });

  it('sends no override when the input is unchanged', () => {
    expect(rerunBody('plan.x', { prompt: 'a' }, '{\n  "prompt": "a"\n}').body).toEqual({ from: ['plan.x'] });
  });

  it('refuses input that is not JSON and says so', () => {
    const r = rerunBody('critique', {}, '{prompt: b}');
    expect(r.body).toBeNull();
    expect(r.error).toMatch(/not valid JSON/);
  });
});
