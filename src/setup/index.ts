/**
 * Python environment setup: find a suitable interpreter, create the engine's venv and install its
 * pinned requirements.
 *
 * @module
 */
export {
  ensurePythonEnv,
  extraRequirementsFile,
  type PythonEnv,
  type PythonEnvOptions,
  PythonEnvOptionsSchema,
  type PythonExtra,
  PythonExtraSchema,
  type ResolvePythonOptions,
  ResolvePythonOptionsSchema,
  requirementsHash,
  resolvePythonBin,
  VENV_MARKER,
  venvCacheDir,
  venvPython,
} from './env.js';
export {
  type CommandResult,
  findExecutable,
  MIN_PYTHON,
  type PythonInfo,
  probePython,
  runCommand,
} from './python.js';
