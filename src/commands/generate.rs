//! `recur generate`: the synthetic event stream and its ground truth.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use flate2::Compression;
use flate2::write::GzEncoder;
use recur_engine::synth::{self, SynthCampaign, SynthConfig, SynthCounts};

use crate::cli::{GenerateArgs, SynthShape};
use crate::output::thousands;

pub(crate) fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let (counts, truth) = generate_to(&args.out, &args.shape)?;
    eprintln!(
        "wrote {} lines to {} ({} unique events, {} duplicates, {} malformed); ground truth in {}",
        thousands(counts.lines),
        args.out.display(),
        thousands(counts.unique_events),
        thousands(counts.duplicate_lines),
        thousands(counts.malformed_lines),
        truth.display()
    );
    Ok(())
}

/// `events.ndjson[.gz]` → `events.truth.jsonl`.
pub(crate) fn truth_path(out: &Path) -> PathBuf {
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("events");
    let stem = name.trim_end_matches(".gz");
    let stem = stem
        .strip_suffix(".ndjson")
        .or_else(|| stem.strip_suffix(".jsonl"))
        .or_else(|| stem.strip_suffix(".json"))
        .unwrap_or(stem);
    out.with_file_name(format!("{stem}.truth.jsonl"))
}

pub(crate) fn config_of(shape: &SynthShape) -> anyhow::Result<SynthConfig> {
    for (flag, rate) in [
        ("--duplicate-rate", shape.duplicate_rate),
        ("--malformed-rate", shape.malformed_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            anyhow::bail!("{flag} must be between 0 and 1, got {rate}");
        }
    }
    let end = recur_engine::event::parse_date(&shape.end)
        .map_err(anyhow::Error::msg)
        .context("--end")?;
    let campaign = match &shape.campaign {
        None => None,
        Some(name) => {
            recur_engine::analytics::audience::check_name(name).map_err(|_| {
                anyhow::anyhow!("--campaign {name:?}: use 1 to 64 characters of a-z, 0-9, _ and -")
            })?;
            let day = match &shape.campaign_day {
                Some(day) => recur_engine::event::parse_date(day)
                    .map_err(anyhow::Error::msg)
                    .context("--campaign-day")?,
                None => end - chrono::Duration::days(14),
            };
            Some(SynthCampaign {
                name: name.clone(),
                day,
                holdout: shape.campaign_holdout,
            })
        }
    };
    Ok(SynthConfig {
        duplicate_rate: shape.duplicate_rate,
        malformed_rate: shape.malformed_rate,
        merchants: shape.merchants,
        users: shape.users,
        items: shape.items,
        days: shape.days,
        seed: shape.seed,
        end,
        campaign,
    })
}

pub(crate) fn generate_to(
    out: &Path,
    shape: &SynthShape,
) -> anyhow::Result<(SynthCounts, PathBuf)> {
    let config = config_of(shape)?;
    let truth = truth_path(out);
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut truth_file = BufWriter::new(
        File::create(&truth).with_context(|| format!("cannot create {}", truth.display()))?,
    );
    let gzip = out.extension().is_some_and(|e| e == "gz");
    let counts = if gzip {
        let mut writer = GzEncoder::new(BufWriter::new(file), Compression::fast());
        let counts = synth::generate(&config, &mut writer, &mut truth_file)?;
        writer.finish()?.flush()?;
        counts
    } else {
        let mut writer = BufWriter::new(file);
        let counts = synth::generate(&config, &mut writer, &mut truth_file)?;
        writer.flush()?;
        counts
    };
    truth_file.flush()?;
    Ok((counts, truth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_sits_beside_the_events() {
        assert_eq!(
            truth_path(Path::new("d/events.ndjson.gz")),
            PathBuf::from("d/events.truth.jsonl")
        );
        assert_eq!(
            truth_path(Path::new("events.ndjson")),
            PathBuf::from("events.truth.jsonl")
        );
        assert_eq!(truth_path(Path::new("x")), PathBuf::from("x.truth.jsonl"));
    }
}
