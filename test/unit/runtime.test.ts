import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initialOldSpaceMB, maxSemiSpaceMB, memoryReducerOn, NODE_FLAGS, PROCESS_ENV } from '../../src/runtime.js';

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

test('NODE_FLAGS floor the old generation at 64 MB; initialOldSpaceMB reads the last one, both spellings', () => {
  assert.equal(initialOldSpaceMB(NODE_FLAGS), 64);
  assert.equal(initialOldSpaceMB([]), undefined);
  assert.equal(initialOldSpaceMB(['--initial-old-space-size', '32']), 32);
  assert.equal(initialOldSpaceMB(['--initial_old_space_size=48', '--initial-old-space-size=96']), 96);
  assert.equal(initialOldSpaceMB(['--initial-heap-size=64']), undefined, 'another flag, not this one');
});

test("PROCESS_ENV keeps glibc's trim threshold at 64 MiB", () => {
  assert.deepEqual(PROCESS_ENV, { MALLOC_TRIM_THRESHOLD_: '67108864' });
});
