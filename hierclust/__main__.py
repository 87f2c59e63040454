from hierclust.cli import main

main()
