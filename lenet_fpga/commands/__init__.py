"""The subcommands of ``lenet-fpga``, one module each (``lenet_fpga/cli.py`` lists them).

A command module has ``NAME``, ``HELP`` (one line for the command list), ``DESCRIPTION`` (the
paragraph of its ``--help``), ``add_arguments(parser)`` and ``run(args) -> int`` (the exit
status). The shared option vocabulary is ``options``. Command modules import the library
(torch, amaranth, the simulators) inside ``run``: building the parser stays cheap.
"""
