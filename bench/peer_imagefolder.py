"""The straightforward peer: torchvision ImageFolder + DataLoader (cores as workers) +
a bundled network (lenet unless named), writing CSV.
Usage: peer_imagefolder.py FOLDER OUT.csv [CHECKPOINT] [DEVICE]"""

import csv
import os
import sys

import torch
from torchvision import datasets, transforms

from mnist_batch.model import MEAN, STD, load_checkpoint, resolve_checkpoint


def main(folder, out, checkpoint="lenet", device="cpu"):
    transform = transforms.Compose([transforms.Grayscale(), transforms.Resize((28, 28)),
                                    transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    dataset = datasets.ImageFolder(folder, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=512, num_workers=os.cpu_count())
    model, _ = load_checkpoint(resolve_checkpoint(checkpoint), torch.device(device))
    paths = [path for path, _ in dataset.samples]
    with open(out, "w", newline="") as f, torch.inference_mode():
        writer = csv.writer(f)
        writer.writerow(["path", "pred", "confidence"])
        seen = 0
        for images, _ in loader:
            probs = model(images.to(device))[:, :10].exp()
            confidence, pred = probs.max(1)
            for i in range(len(images)):
                writer.writerow([paths[seen + i], int(pred[i]), float(confidence[i])])
            seen += len(images)


if __name__ == "__main__":
    main(*sys.argv[1:5])
