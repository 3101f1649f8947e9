"""How most backends save and load: torch.distributed.checkpoint, where every rank writes
its part of model and optimizer and a load on another world size reshards; rank 0 adds the
schedule and the loss scale. DeepSpeed overrides both with its own format."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class DistributedCheckpointing:
    """Mixed into Backend: uses its model, optimizer, scheduler and scaler."""

    def save_checkpoint(self, folder: Path) -> None:
        """Every rank writes its part of model and optimizer (torch.distributed.checkpoint,
        which reshards on load); rank 0 the schedule and the loss scale."""
        import torch.distributed.checkpoint as dcp

        dcp.save(self._dcp_state(), checkpoint_id=str(folder / "dcp"))
        if _rank() == 0:
            if self.scheduler is not None:
                torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")
            if self.scaler is not None:
                torch.save(self.scaler.state_dict(), folder / "grad_scaler.pt")

    def load_checkpoint(self, folder: Path) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_state_dict

        target = self._dcp_state()
        dcp.load(target, checkpoint_id=str(folder / "dcp"))
        set_state_dict(self.model, self.optimizer, model_state_dict=target["model"],
                       optim_state_dict=target["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt"))
        if self.scaler is not None:
            self.scaler.load_state_dict(torch.load(folder / "grad_scaler.pt"))

    def _dcp_state(self) -> dict:
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        return {"model": model_state, "optimizer": optimizer_state}
