// search library: supernet, QSS, QPL (see issues 5 and 6)
