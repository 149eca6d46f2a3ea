//! `hardening init [-f FILE] [--from-history] [--force]`: write a commented hardening file —
//! the defaults, or what kubeharden's own committed transactions on this node applied.

use crate::cli::context::Ctx;
use crate::cli::output::Outcome;
use crate::error::{Error, IoContext, Result};
use crate::export::delta::flags;
use crate::hardening::file::{self, component_of};
use crate::hardening::template::{self, Captured};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Flag changes of every `change` version against the version before it.
fn capture(ctx: &Ctx) -> Result<Captured> {
    let mut c = Captured::default();
    let Some(view) = ctx.open_read_only()? else {
        return Ok(c);
    };
    let catalog = view.unrecovered.catalog();
    let store = view.unrecovered.store();
    for path in catalog.paths()? {
        let stem = Path::new(&path)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(comp) = component_of(&stem) else {
            continue;
        };
        let versions = catalog.versions(Some(&path))?;
        for w in versions.windows(2) {
            let (prev, v) = (&w[0], &w[1]);
            if v.origin != "change" || prev.state.hash == v.state.hash {
                continue;
            }
            let (_, before) = flags(&store.get(&prev.state.hash)?);
            let (_, after) = flags(&store.get(&v.state.hash)?);
            let mut touched = false;
            for (n, val) in &after {
                if !before.iter().any(|(bn, bv)| bn == n && bv == val) {
                    template::classify(&mut c, comp, n, Some(val));
                    touched = true;
                }
            }
            for (n, _) in &before {
                if !after.iter().any(|(an, _)| an == n) {
                    template::classify(&mut c, comp, n, None);
                    touched = true;
                }
            }
            if touched {
                c.txns.extend(v.txn);
            }
        }
    }
    c.txns.sort_unstable();
    c.txns.dedup();
    Ok(c)
}

pub fn init(ctx: &Ctx, out: Option<&Path>, from_history: bool, force: bool) -> Result<Outcome> {
    let captured = if from_history {
        Some(capture(ctx)?)
    } else {
        None
    };
    let text = template::render(captured.as_ref());
    // What we write must read back: the template is checked like any file.
    file::parse(&text, Path::new("(generated)")).map_err(|e| {
        Error::usage(format!(
            "internal: generated file does not parse: line {}: {}",
            e.line, e.what
        ))
    })?;
    let target: PathBuf = match out {
        Some(p) => p.to_path_buf(),
        None => file::default_path(),
    };
    let json = json!({
        "path": target.display().to_string(),
        "from_history": from_history,
        "txns": captured.as_ref().map(|c| c.txns.clone()).unwrap_or_default(),
        "opt_in": captured.as_ref().map(|c| c.opt_in.clone()).unwrap_or_default(),
    });
    if target == Path::new("-") {
        return Ok(Outcome::new(json, text));
    }
    if target.exists() && !force {
        return Err(Error::usage(format!(
            "{} exists; give --force to replace it (or -f - to print)",
            target.display()
        )));
    }
    if let Some(d) = target.parent() {
        std::fs::create_dir_all(d).ctx(|| format!("creating {}", d.display()))?;
    }
    let tmp = target.with_extension("yaml.kubeharden-tmp");
    std::fs::write(&tmp, &text)
        .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|_| std::fs::rename(&tmp, &target))
        .ctx(|| format!("writing {}", target.display()))?;
    Ok(Outcome::new(json, format!("wrote {}\n", target.display())))
}
