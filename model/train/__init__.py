"""Training with PyTorch: quantization-aware training (``qat``), importing a trained model
(``importer``) and compression (``compress``, ``learned``). The only part of the project that
imports torch; the model core (arithmetic, networks, weights, golden model) never imports it."""
