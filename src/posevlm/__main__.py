from posevlm.cli import main

main()
