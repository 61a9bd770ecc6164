"""``train`` (offline), ``evaluate`` and ``learn`` (online): agents from stores."""

from __future__ import annotations

import sys

import click

from .common import json_arg, main, progress_arg

AGENT_FILE = "a saved agent: one .npz file written by train/learn"
OUT_HELP = (f"Where to save the agent ({AGENT_FILE}, e.g. q.npz). An existing file is refused "
            "unless --overwrite is given.")


# -- train and evaluate ---------------------------------------------------------------------------
@main.command()
@click.argument("path", type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help=OUT_HELP)
@click.option("--overwrite", is_flag=True, help="Replace --out and --log if they exist.")
@click.option("--updates", type=click.IntRange(min=1), help="Exactly this many updates (default: until converged).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Passes over the store instead.")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Minibatches of B sampled rows (default: full sweeps over the store).")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help='Base learning rate in (0, 1] (see --alpha-schedule).')
@click.option("--alpha-schedule", type=click.Choice(["auto", "visits", "polynomial", "constant"]),
              default="auto", show_default=True,
              help="Step-size schedule; auto = constant for sweeps, visits for minibatches.")
@click.option("--gamma", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help="Discount factor (0.99 by default, as for learn; the FrozenLake examples and "
                   "the demo use 0.95: give it explicitly to match them).")
@click.option("--balanced-by", help="Sample class-balanced by this discrete field.")
@click.option("--seed", type=int, default=0, show_default=True,
              help='Seed of the sampler and of the evaluation episodes.')
@click.option("--tol", type=float, default=1e-6, show_default=True,
              help="Stop when the bound on the Q-table's remaining error is below this.")
@click.option("--max-updates", type=click.IntRange(min=1), default=500_000, show_default=True,
              help='Stop after this many updates even if the Q-table still changes.')
@click.option("--eval-every", type=click.IntRange(min=1),
              help="Evaluate the greedy policy every K updates (sweeps, in sweep mode) and at the end "
                   "(default: off, no evaluation; needs the store's env or --env).")
@click.option("--eval-episodes", type=click.IntRange(min=1), default=100, show_default=True,
              help='Episodes of each evaluation (with --eval-every).')
@click.option("--env", "env_id", help="Environment for evaluation (default: the store's env id).")
@click.option("--env-kwargs", help="Evaluation env kwargs as JSON (default: the store's).")
@click.option("--log", "log_csv", type=click.Path(dir_okay=False),
              help="Write metrics to this CSV: a row per sweep (or per --log-every minibatch updates) with "
                   "update,transitions,sweep,max_dq,bound,seconds and the evaluation's mean_return,"
                   "success_rate,mean_length when the row has one.")
@click.option("--log-every", type=click.IntRange(min=1), default=1000, show_default=True,
              help="With --batch-size: a --log row every N updates (and at every evaluation and the end).")
@click.option("--trust-env-id", is_flag=True,
              help="Make the store's recorded env id even in the module:Env-v0 form, which imports "
                   "that module (refused by default: a store is data).")
@click.option("--agent", "agent_kind", type=click.Choice(["q", "dqn", "cql"]), default="q", show_default=True,
              help="q: tabular Q-learning; dqn: deep Q-learning; cql: discrete CQL (dqn/cql: the torch "
                   "extra, minibatches of 256, 50000 updates unless given, saved as one .pt file).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help="dqn/cql: Adam's learning rate (default 2.3e-3).")
@click.option("--cql-alpha", type=click.FloatRange(0), help="cql: weight of the conservative penalty (default 1).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help='Show a progress bar on the terminal (redrawn at most 4 times a second).')
def train(path, out, overwrite, updates, epochs, batch_size, alpha, alpha_schedule, gamma, balanced_by, seed,
          tol, max_updates, eval_every, eval_episodes, env_id, env_kwargs, log_csv, log_every, trust_env_id,
          agent_kind, lr, cql_alpha, progress):
    """Train an agent offline from the store at PATH and save it to --out.

    Example: replaystore train fl.zarr --out q.npz --gamma 0.95 --eval-every 10 --log metrics.csv

    Example: replaystore train cp.zarr --agent cql --updates 50000 --out cp-offline

    Ctrl-C stops training and saves the agent trained so far to --out (exit status 130).
    """
    from ..training import TrainInterrupted, train_store

    try:
        report = train_store(path, out, updates=updates, epochs=epochs, batch_size=batch_size,
                             balanced_by=balanced_by, alpha=alpha, alpha_schedule=alpha_schedule,
                             gamma=gamma, seed=seed, tol=tol, max_updates=max_updates,
                             eval_every=eval_every, eval_episodes=eval_episodes, env_id=env_id,
                             env_kwargs=json_arg(env_kwargs, "--env-kwargs") if env_kwargs else None,
                             log_csv=log_csv, log_every=log_every, progress=progress_arg(progress),
                             trust_env_id=trust_env_id, overwrite=overwrite, agent=agent_kind, lr=lr,
                             cql_alpha=cql_alpha)
    except TrainInterrupted as exc:
        click.echo(exc.line(), err=True)
        sys.exit(130)
    click.echo("\n".join(report.lines()))


@main.command()
@click.argument("env_id")
@click.argument("agent", type=click.Path(dir_okay=False))
@click.option("--episodes", type=click.IntRange(min=1), default=100, show_default=True,
              help='Episodes to run.')
@click.option("--seed", type=int, default=0, show_default=True,
              help='Seed of the first episode (episode k uses seed + k) and of the random actions.')
@click.option("--epsilon", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help='Probability of a random action (0: the greedy policy).')
@click.option("--env-kwargs", help="Environment keyword arguments as JSON.")
def evaluate(env_id, agent, episodes, seed, epsilon, env_kwargs):
    """Run a saved agent greedily in ENV_ID: mean return, success rate, episode length.

    AGENT is a saved agent: one .npz file written by train/learn (the older q.npy layouts
    still read).

    Example: replaystore evaluate FrozenLake-v1 q.npz --episodes 1000 --env-kwargs '{"is_slippery": true}'
    """
    from ..training import evaluate as run_eval

    r = run_eval(env_id, agent, episodes=episodes, seed=seed, epsilon=epsilon,
                 env_kwargs=json_arg(env_kwargs, "--env-kwargs"))
    click.echo(f"{env_id}: {r['episodes']} episodes, mean return {r['mean_return']:.3f} "
               f"(std {r['std_return']:.3f}), success rate {r['success_rate']:.2%}, "
               f"mean length {r['mean_length']:.1f}")


# -- learn online (replaystore/online/) ----------------------------------------------------------
@main.command()
@click.argument("env_id")
@click.option("--buffer", "buffer", required=True, type=click.Path(file_okay=False),
              help="The replay buffer: a ring store created here (its run state goes next to it).")
@click.option("--capacity", required=True, type=click.IntRange(min=2), help="Ring capacity in rows.")
@click.option("--steps", required=True, type=click.IntRange(min=1), help="Env steps of the whole run.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help=OUT_HELP + " With --resume, the output of the run it resumes may be replaced.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--seed", type=int, default=0, show_default=True,
              help='Seed of the run: env resets, exploration, the sampler (all derived from it).')
@click.option("--gamma", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help='Discount factor.')
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help='Base learning rate in (0, 1] (see --alpha-schedule).')
@click.option("--alpha-schedule", type=click.Choice(["visits", "polynomial", "constant"]),
              default="visits", show_default=True, help="Step-size schedule of the Q-learning agent.")
@click.option("--env-kwargs", help='Environment keyword arguments as JSON, e.g. \'{"is_slippery": true}\'.')
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help='Transitions per update [default: 32; dqn: 64].')
@click.option("--updates-per-step", type=click.FloatRange(min=0), default=1, show_default=True,
              help='Updates (each one sampled batch) per env step; a fraction spreads them (0.5: one '
                   'every other step).')
@click.option("--learning-starts", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Rows stored before updates begin.")
@click.option("--epsilon-start", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help='Exploration rate at the first step.')
@click.option("--epsilon-end", type=click.FloatRange(0, 1), default=None,
              help='Exploration rate after --epsilon-fraction of the run [default: 0.05; dqn: 0.04].')
@click.option("--epsilon-fraction", type=click.FloatRange(0, 1), default=None,
              help="Share of the run over which epsilon decays linearly [default: 0.5; dqn: 0.16].")
@click.option("--commit-every", type=click.IntRange(min=1), default=None,
              help="Commit the buffer and save the run state every N env steps "
                   "[default: 10000, less for rings with a smaller write buffer].")
@click.option("--eval-every", type=click.IntRange(min=1), help="Evaluate the greedy policy every N steps.")
@click.option("--eval-episodes", type=click.IntRange(min=1), default=100, show_default=True,
              help='Episodes of each evaluation (with --eval-every; the gap to optimal needs none).')
@click.option("--balanced-by", help="Sample class-balanced by this discrete field (or reward_sign).")
@click.option("--log", "log_csv", type=click.Path(dir_okay=False),
              help="Write the learning curves (episodes, evaluations, TD) to this CSV.")
@click.option("--resume", is_flag=True, help="Continue the run saved in --buffer (same settings).")
@click.option("--prioritized", is_flag=True,
              help="Prioritized replay: rows drawn by |TD error|^alpha, importance-weighted, priorities "
                   "saved with the buffer.")
@click.option("--priority-alpha", type=click.FloatRange(0), default=0.6, show_default=True,
              help="With --prioritized: the exponent of the priorities.")
@click.option("--priority-beta", type=click.FloatRange(0), default=0.4, show_default=True,
              help="With --prioritized: the exponent of the importance weights.")
@click.option("--agent", "agent_kind", type=click.Choice(["q", "dqn"]), default="q", show_default=True,
              help="q: tabular Q-learning; dqn: deep Q-learning (the torch extra), saved as one .pt file.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help="dqn: Adam's learning rate (default 2.3e-3).")
@click.option("--target-update", type=click.IntRange(min=1),
              help="dqn: copy the Q-network to the target network every N updates (default 128).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help='Show a progress bar on the terminal (redrawn at most 4 times a second).')
def learn(env_id, buffer, capacity, steps, out, overwrite, seed, gamma, alpha, alpha_schedule, env_kwargs, batch_size,
          updates_per_step, learning_starts, epsilon_start, epsilon_end, epsilon_fraction, commit_every,
          eval_every, eval_episodes, balanced_by, log_csv, resume, prioritized, priority_alpha, priority_beta,
          agent_kind, lr, target_update, progress):
    """Learn online in ENV_ID with a replay buffer on disk: tabular Q-learning, or DQN.

    Example: replaystore learn Taxi-v4 --buffer taxi.zarr --capacity 50000 --steps 200000 --out taxi.npz --seed 0

    Example: replaystore learn CartPole-v1 --agent dqn --buffer cp.zarr --capacity 100000 --steps 50000 --out cp-dqn --seed 0

    Defaults by agent: q: --batch-size 32, --epsilon-end 0.05, --epsilon-fraction 0.5;
    dqn: --batch-size 64, --epsilon-end 0.04, --epsilon-fraction 0.16.

    After a crash, the same command with --resume goes on from the last commit.
    """
    from ..online import learn as run_learn

    report = run_learn(env_id, buffer, capacity=capacity, steps=steps, out=out, seed=seed, gamma=gamma,
                       alpha=alpha, alpha_schedule=alpha_schedule,
                       env_kwargs=json_arg(env_kwargs, "--env-kwargs"), batch_size=batch_size,
                       updates_per_step=updates_per_step, learning_starts=learning_starts,
                       epsilon_start=epsilon_start, epsilon_end=epsilon_end,
                       epsilon_fraction=epsilon_fraction, commit_every=commit_every,
                       eval_every=eval_every, eval_episodes=eval_episodes, balanced_by=balanced_by,
                       log=log_csv, resume=resume, progress=progress_arg(progress), overwrite=overwrite,
                       agent=agent_kind, lr=lr, target_update=target_update, prioritized=prioritized,
                       priority_alpha=priority_alpha, priority_beta=priority_beta)
    click.echo("\n".join(report.lines()))



