//! Command-line options.

pub(crate) const USAGE: &str = "\
usage: multiproc-bench [--json] [--quick] [--iters N] [FILTER]

  --json      one JSON object per line instead of a table
  --quick     smoke run: 1 warm-up and 2 samples per row (CI)
  --iters N   N samples per row (default: a count chosen per row)
  FILTER      only rows whose name contains FILTER, or one of its
              comma-separated parts: start_join/fork, pipe/,queue/
              (channel rows keep their floors)
";

/// What the command line asked for.
#[derive(Debug, Default)]
pub(crate) struct Options {
    pub(crate) json: bool,
    pub(crate) quick: bool,
    pub(crate) iters: Option<usize>,
    pub(crate) filter: Option<String>,
}

/// The result of parsing the command line.
pub(crate) enum Parsed {
    Run(Options),
    Help,
}

impl Options {
    /// Parses the arguments after the program name.
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
        let mut opts = Options::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--json" => opts.json = true,
                "--quick" => opts.quick = true,
                "--iters" => {
                    let n = args.next().ok_or("--iters needs a number")?;
                    opts.iters = Some(parse_iters(&n)?);
                }
                "-h" | "--help" => return Ok(Parsed::Help),
                // `cargo bench` passes `--bench`; accept and ignore it.
                "--bench" => {}
                s if s.starts_with("--iters=") => opts.iters = Some(parse_iters(&s["--iters=".len()..])?),
                s if s.starts_with('-') => return Err(format!("unknown option {s}")),
                s => {
                    if opts.filter.is_some() {
                        return Err(format!("only one FILTER is accepted, got a second one: {s}"));
                    }
                    opts.filter = Some(s.to_owned());
                }
            }
        }
        Ok(Parsed::Run(opts))
    }

    /// Whether the row called `name` is to be measured.
    pub(crate) fn wants(&self, name: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|f| f.split(',').any(|part| !part.is_empty() && name.contains(part)))
    }

    /// Warm-up runs and samples for a row whose full run takes `full`
    /// samples.
    pub(crate) fn counts(&self, full: usize) -> Counts {
        match (self.quick, self.iters) {
            (_, Some(n)) => Counts {
                warmup: if self.quick { 1 } else { (n / 10).clamp(1, 20) },
                samples: n,
            },
            (true, None) => Counts { warmup: 1, samples: 2 },
            (false, None) => Counts {
                warmup: (full / 10).clamp(2, 20),
                samples: full,
            },
        }
    }
}

fn parse_iters(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("--iters wants a positive number, got {s:?}")),
    }
}

/// How many times one row runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Counts {
    /// Untimed runs first.
    pub(crate) warmup: usize,
    /// Timed runs.
    pub(crate) samples: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        match Options::parse(args.iter().map(|s| s.to_string()))? {
            Parsed::Run(o) => Ok(o),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn flags_and_filter() {
        let o = parse(&["--json", "--quick", "start_join"]).unwrap();
        assert!(o.json && o.quick);
        assert!(o.wants("process/start_join/fork"));
        assert!(!o.wants("process/transfer_16MiB/fork"));
        assert_eq!(parse(&["--iters", "7"]).unwrap().counts(100).samples, 7);
        assert_eq!(parse(&["--iters=7"]).unwrap().counts(100).samples, 7);
        assert_eq!(parse(&["--quick"]).unwrap().counts(100).samples, 2);
        assert!(parse(&["--iters", "0"]).is_err());
        assert!(parse(&["--nope"]).is_err());
        assert!(parse(&["a", "b"]).is_err());
        assert!(parse(&[]).unwrap().wants("anything"));
        let both = parse(&["pipe/,queue/"]).unwrap();
        assert!(both.wants("pipe/oneway_64B/fork") && both.wants("queue/echo_64B/spawn"));
        assert!(!both.wants("process/start_join/fork"));
    }
}
