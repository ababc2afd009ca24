from mnist_batch.cli import main

main()
