"""DeepSpeed JSON per ZeRO stage, installed as `graddrop_dist.ds_configs` (pyproject.toml
maps this folder into the package): `backend.ds_config: zero3` names one of them."""
