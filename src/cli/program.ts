/**
 * The `arc-ttft` command: one commander program, one file per subcommand.
 *
 * @module
 */
import { Command } from 'commander';
import { VERSION } from '../version.js';
import { inspectCommand } from './commands/inspect.js';
import { joinCommand } from './commands/join.js';
import { runCommand } from './commands/run.js';
import { scoreCommand } from './commands/score.js';
import { setupCommand } from './commands/setup.js';
import { splitCommand } from './commands/split.js';

/** Builds the `arc-ttft` program with every subcommand. */
export function createProgram(): Command {
  const program = new Command('arc-ttft')
    .description('Single-task test-time fine-tuning (TTFT) on ARC tasks')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride((err) => {
      // Usage errors exit 2, as the README promises; --help/--version exit 0.
      process.exit(err.exitCode === 0 ? 0 : 2);
    });
  for (const command of [
    setupCommand(),
    runCommand(),
    inspectCommand(),
    splitCommand(),
    joinCommand(),
    scoreCommand(),
  ]) {
    // addCommand does not pass exitOverride down; copy it so subcommand usage errors exit 2 too.
    program.addCommand(command.copyInheritedSettings(program));
  }
  return program;
}
