"""python -m nestgan.explore"""

from nestgan.explore import main

main()
