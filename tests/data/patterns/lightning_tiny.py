"""A tiny real Lightning run on the CPU, for the lightning preset's test: `tqdm` or `rich` progress bar."""
import sys

import torch, lightning as L
from torch.utils.data import DataLoader, TensorDataset
class M(L.LightningModule):
    def __init__(self):
        super().__init__(); self.lin = torch.nn.Linear(4, 1)
    def training_step(self, batch, i):
        x, y = batch; loss = torch.nn.functional.mse_loss(self.lin(x), y)
        self.log("train_loss", loss, prog_bar=True); return loss
    def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=0.1)
torch.manual_seed(0)
ds = TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False,
          callbacks=[L.pytorch.callbacks.TQDMProgressBar() if sys.argv[1] == 'tqdm' else L.pytorch.callbacks.RichProgressBar()]).fit(M(), DataLoader(ds, batch_size=8))
