from oodml_cli import main

main()
