"""Train a toydiff model: thin entry point; the front end lives in toydiff/train_cli.py."""
from toydiff.train_cli import main

if __name__ == "__main__":
    main()
