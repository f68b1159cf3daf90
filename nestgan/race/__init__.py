"""A quality race: training configs compared by quality at equal training minutes, each run on the machine alone.

    python -m nestgan.race --config nest=configs/study/celeba64-nest-r1d-b32.toml \\
        --config "conv=configs/study/celeba64-nest-r1d-b32.toml --g conv" \\
        --config dcgan=configs/study/celeba64-dcgan.toml \\
        --seeds 0,1 --minutes 10,25,50 --data-dir ../shared/data/celeba --out races/celeba64

Each (config, seed) trains alone, one after another (seed by seed, so that every config has a result early), with
every usable core, for the last of --minutes, and snapshots as its training time passes each of them
(--snap-minutes). The snapshot nearest each minute, by its recorded training seconds, is then scored with --metrics
against every real image. Other load on the machine is measured before, during and after each training; a run that
saw some is flagged, not hidden. --pin trains runs side by side, one per core: they share caches and memory
bandwidth, so their figures are trials, and say so.

The race directory (--out):
- race.jsonl: one line per (config, seed, minute, metric) score: the snapshot's place, img/s, the machine, the other
  load its training saw and its train commands;
- race.md, race-fid.png: the table and the plot, rewritten after each scored run;
- race.json: the entries (name, config file, train flags), the data, the kind of machine and the race commands, so
  that a rerun goes on (on the same kind of machine: training minutes elsewhere would not compare);
- race.lock: held while a race process works in the directory (one at a time);
- runs/<name>-s<seed>/: the run's --outdir (numbered run directories: a resumed training adds one), with
  trainings.jsonl (a line as each training command starts and as it ends) and console.txt (its output).

Rerunning the same command continues: finished trainings are not repeated, an interrupted one resumes from its
newest snapshot, and scored (run, minute, metric) entries are not evaluated again. More configs, seeds, minutes or
metrics extend the race.
"""

from nestgan.race.cli import main

__all__ = ["main"]
