/**
 * The Python bridge: a typed, queued, crash-proof channel to a Python module's `dispatch` function.
 *
 * @module
 */
export {
  Bridge,
  type BridgeCallOptions,
  BridgeCallOptionsSchema,
  type BridgeExitCause,
  type BridgeExitEvent,
  type BridgeHooks,
  type BridgeOptions,
  BridgeOptionsSchema,
  type BridgeSession,
  createBridge,
} from './bridge.js';
