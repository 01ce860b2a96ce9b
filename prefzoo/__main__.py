from prefzoo.zoo.cli import main

main()
