import { createProgram } from './program.js';

// `arc-ttft … | head` closes stdout early: that is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

await createProgram().parseAsync(process.argv);
