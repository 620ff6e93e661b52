"""Tables in: the results and curves tables read into typed runs, their IsoFLOP budgets, FLOP conventions."""
