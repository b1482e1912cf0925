"""Sample a toydiff run: thin entry point; the front end lives in toydiff/sample_cli.py."""
from toydiff.sample_cli import main

if __name__ == "__main__":
    main()
