import assert from 'node:assert/strict';
import { test } from 'node:test';
import { maxSemiSpaceMB, memoryReducerOn, NODE_FLAGS } from '../../src/runtime.js';

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

test('NODE_FLAGS cap the young generation at 16 MB semi-spaces', () => {
  assert.equal(maxSemiSpaceMB(NODE_FLAGS, ''), 16);
});

test('maxSemiSpaceMB: the command line wins over NODE_OPTIONS; the last one wins; both spellings', () => {
  assert.equal(maxSemiSpaceMB([], ''), undefined);
  assert.equal(maxSemiSpaceMB(['--max-semi-space-size=8'], ''), 8);
  assert.equal(maxSemiSpaceMB(['--max-semi-space-size', '32'], ''), 32);
  assert.equal(maxSemiSpaceMB(['--max_semi_space_size=4'], ''), 4);
  assert.equal(maxSemiSpaceMB(['--max-semi-space-size=16', '--max-semi-space-size=8'], ''), 8);
  assert.equal(maxSemiSpaceMB(['--max-semi-space-size=16'], '--max-semi-space-size=8'), 16);
  assert.equal(maxSemiSpaceMB([], '--enable-source-maps  --max-semi-space-size=8'), 8);
  assert.equal(maxSemiSpaceMB(['--min-semi-space-size=4'], ''), undefined, 'another flag, not this one');
});
