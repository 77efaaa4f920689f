// The message of the Error an action throws, for tests that check what users are told.
import assert from 'node:assert/strict';

export function errorMessage(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    assert.ok(error instanceof Error, 'must throw an Error');
    return error.message;
  }
  assert.fail('expected an error');
}
