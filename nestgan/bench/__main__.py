from nestgan.bench.cli import main

main()
