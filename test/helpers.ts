import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Read-only ARC data shared beside the repo (CI has it too). */
export const SHARED_DATA = resolve(ROOT, '../shared/arc-data');
export const ARC1_TRAINING = join(SHARED_DATA, 'arc-agi-1/training');
export const ARC1_EVALUATION = join(SHARED_DATA, 'arc-agi-1/evaluation');
export const KAGGLE = join(SHARED_DATA, 'kaggle-2024');
export const HAS_SHARED_DATA = existsSync(SHARED_DATA);
