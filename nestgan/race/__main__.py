from nestgan.race.cli import main

main()
