"""Design-space exploration: ``lenet-fpga explore`` sweeps a grid of points (weights, generator
parameters, device, clock, place-and-route seed) through the flow's stages on Dask workers.

* ``grid``: the grid, from the command line or a TOML/JSON file, expanded into points;
* ``keys``: what determines a point's result, hashed into its key (resume, deduplication);
* ``results``: the results file, one JSON line per finished point;
* ``stages``: the stages (golden accuracy, RTL stream, place and route) and the process that
  runs a tool stage; ``isolate``: that process in its own process group, stopped as a group;
* ``point``: one point on a worker, in its own scratch folder; ``cluster``: the Dask plumbing;
* ``pareto`` and ``plots``: the fronts and their picture; ``commands``: the subcommand.
"""
