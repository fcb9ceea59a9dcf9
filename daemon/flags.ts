// The part of node:util's parseArgs that daemon/config.ts uses (strict, positionals allowed),
// with node's error wording (config.ts's describeParseError reads it). Importing node:util costs
// ~8 ms of start-up (Deno's Node layer), and the tap has to exist within a few milliseconds of
// exec (scripts touch it right after starting slirp4netns).
//
// Accepted: `--name`, `--name=value`, `--name value`, `-x`, `-x value`, `-xVALUE` (a string
// short flag), `-abc` (boolean short flags together), `--` (the rest are positionals), `-`
// (a positional). A string option's separate value may not start with "-" (node: ambiguous).

export interface FlagOption {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
}

export interface ParsedFlags {
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
}

function label(name: string, o: FlagOption): string {
  return o.short ? `-${o.short}, --${name}` : `--${name}`;
}

/** `strict` and `allowPositionals` are accepted as node takes them; both are always on. */
export function parseArgs({ args, options }: {
  args: string[];
  options: Record<string, FlagOption>;
  strict?: true;
  allowPositionals?: true;
}): ParsedFlags {
  const values: ParsedFlags["values"] = {};
  const positionals: string[] = [];
  const byShort = new Map<string, string>();
  for (const [name, o] of Object.entries(options)) if (o.short) byShort.set(o.short, name);

  const store = (name: string, v: string | boolean) => {
    if (options[name].multiple) {
      const list = (values[name] as (string | boolean)[] | undefined) ?? [];
      list.push(v);
      values[name] = list;
    } else values[name] = v;
  };
  const unknown = (token: string) =>
    new TypeError(
      `Unknown option '${token}'. To specify a positional argument starting with a '-', place ` +
        `it at the end of the command after '--', as in '-- "${token}"`,
    );

  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const o = Object.hasOwn(options, name) ? options[name] : undefined;
      if (o === undefined) throw unknown(eq < 0 ? a : a.slice(0, eq));
      if (o.type === "boolean") {
        if (eq >= 0) throw new TypeError(`Option '${label(name, o)}' does not take an argument`);
        store(name, true);
      } else if (eq >= 0) {
        store(name, a.slice(eq + 1));
      } else {
        const v = args[i + 1];
        if (v === undefined || (v.length > 1 && v.startsWith("-"))) {
          throw new TypeError(`Option '${label(name, o)} <value>' argument missing`);
        }
        store(name, v);
        i++;
      }
      continue;
    }
    if (a.startsWith("-") && a.length > 1) {
      for (let k = 1; k < a.length; k++) {
        const name = byShort.get(a[k]);
        if (name === undefined) throw unknown(`-${a[k]}`);
        const o = options[name];
        if (o.type === "boolean") {
          store(name, true);
          continue;
        }
        if (k + 1 < a.length) {
          store(name, a.slice(k + 1)); // -m1500
        } else {
          const v = args[i + 1];
          if (v === undefined || (v.length > 1 && v.startsWith("-"))) {
            throw new TypeError(`Option '${label(name, o)} <value>' argument missing`);
          }
          store(name, v);
          i++;
        }
        break;
      }
      continue;
    }
    positionals.push(a);
  }
  return { values, positionals };
}
