/** Configuration for a CLI command: parsed once; a bad setting exits 2 with every problem named. */
import { ConfigError, loadConfig, type Config } from "../core/config.js";

export function configOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
