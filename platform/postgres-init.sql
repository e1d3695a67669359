-- Second database of the platform's PostgreSQL: Optuna's storage (tune.storage).
CREATE DATABASE optuna;
