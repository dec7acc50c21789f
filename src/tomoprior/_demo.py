"""``make demo``: napari with the Reconstruction widget and the needle tilt series.

Run with ``python -m tomoprior._demo``. napari is imported inside
:func:`main` so that importing this module stays cheap.
"""

from __future__ import annotations

import argparse

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tomoprior._demo", description=__doc__)
    parser.add_argument(
        "--sample",
        default="needle_haadf",
        help="sample to open: needle_haadf, pt_haadf_series, pt_adf_series, ...",
    )
    parser.add_argument(
        "--compare", action="store_true", help="also open the Compare methods widget"
    )
    args = parser.parse_args(argv)

    import napari

    viewer = napari.Viewer(title="napari-tomoprior demo")
    viewer.open_sample("napari-tomoprior", args.sample)
    viewer.window.add_plugin_dock_widget("napari-tomoprior", "Reconstruction")
    if args.compare:
        viewer.window.add_plugin_dock_widget("napari-tomoprior", "Compare methods", tabify=True)
    napari.run()


if __name__ == "__main__":
    main()
