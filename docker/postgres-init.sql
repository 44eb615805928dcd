-- The managed server's second database: Dagster's own storage beside the domain database "automat".
CREATE DATABASE dagster OWNER automat;
