"""Command line: parses options and calls the library. Run `python cli.py --help`."""
from __future__ import annotations

import sys

import click

# Errors a user can cause with bad input: reported as one line, exit code 2, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, PermissionError)


class Cli(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)


@click.group(cls=Cli)
def main():
    """Text-driven StyleGAN editing (StyleCLIP), exported for the edge."""


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--trust-pickle", is_flag=True, help="Allow a full unpickle (runs code from the file; trusted files only).")
def inspect(checkpoint, trust_pickle):
    """Load a StyleGAN2 checkpoint strictly and print its config and StyleSpace layout."""
    from precompute.checkpoints import load_generator

    gen = load_generator(checkpoint, trust_pickle=trust_pickle)
    cfg, layout = gen.config, gen.layout
    click.echo(f"size {cfg.size}, style_dim {cfg.style_dim}, n_mlp {cfg.n_mlp}, n_latent {cfg.n_latent}, "
               f"channel_multiplier {cfg.channel_multiplier}, parameters {sum(p.numel() for p in gen.parameters()):,}")
    click.echo(f"StyleSpace: {len(layout)} layers, {layout.total} channels, {layout.conv_channels} without ToRGB")
    for layer in layout.layers:
        click.echo(f"  {layer.name:<10} {layer.resolution:>5}px {layer.channels:>4} ch  w[{layer.wplus_index}]"
                   f"{'  ToRGB' if layer.is_torgb else ''}")


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--trust-pickle", is_flag=True, help="Allow a full unpickle (runs code from the file; trusted files only).")
@click.option("--sha256", help="Refuse the input unless its sha256 matches.")
def convert(checkpoint, output, trust_pickle, sha256):
    """Convert a rosinality StyleGAN2 checkpoint to our safetensors + JSON format (tensors only)."""
    from precompute.checkpoints import load_generator, save_generator

    gen = load_generator(checkpoint, trust_pickle=trust_pickle, sha256=sha256)
    for path in save_generator(gen, output):
        click.echo(f"wrote {path}")


@main.command("import-mapper")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--trust-pickle", is_flag=True, help="Allow a full unpickle (runs code from the file; trusted files only).")
def import_mapper(checkpoint, output, trust_pickle):
    """Import an official StyleCLIP mapper checkpoint (its decoder copy is dropped)."""
    from precompute.mapper import import_official_mapper, save_mapper

    mapper = import_official_mapper(checkpoint, trust_pickle=trust_pickle)
    groups = [g for g, on in mapper.config.enabled.items() if on]
    click.echo(f"mapper for {mapper.config.prompt!r}: groups {', '.join(groups)}, split {mapper.config.split}")
    for path in save_mapper(mapper, output):
        click.echo(f"wrote {path}")


@main.command()
def demo():
    """Edit the demo world's faces from text (needs the demo models and the runtime)."""
    click.echo("not yet available: the demo world and the runtime have not landed yet")


if __name__ == "__main__":
    main()
