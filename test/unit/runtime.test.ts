import assert from 'node:assert/strict';
import { test } from 'node:test';
import { memoryReducerOn, NODE_FLAGS } from '../../src/runtime.js';

test('NODE_FLAGS turn the memory reducer off', () => {
  assert.equal(memoryReducerOn(NODE_FLAGS), false);
});

test('memoryReducerOn: V8 default on; the last of --memory-reducer / --no-memory-reducer wins; underscores count', () => {
  assert.equal(memoryReducerOn([]), true);
  assert.equal(memoryReducerOn(['--max-semi-space-size=8']), true);
  assert.equal(memoryReducerOn(['--no-memory-reducer']), false);
  assert.equal(memoryReducerOn(['--no_memory_reducer']), false);
  assert.equal(memoryReducerOn(['--no-memory-reducer', '--memory-reducer']), true);
  assert.equal(memoryReducerOn(['--memory-reducer', '--no-memory-reducer']), false);
  assert.equal(memoryReducerOn(['--memory-reducer-for-small-heaps']), true, 'another flag, not this one');
});
