from argusctl.main import run

run()
