// Readiness probe used by start-kafka.sh when the chosen Python has no confluent_kafka.
// Run in single-file source mode (JDK 11+), against the jars in lib/:
//     java -cp 'lib/*' KafkaReady.java 127.0.0.1:9092
// Exit 0 once a metadata request (describeCluster + listTopics) answers, 1 otherwise.
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;

public class KafkaReady {
    public static void main(String[] args) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args.length > 0 ? args[0] : "127.0.0.1:9092");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "5000");
        try (Admin admin = Admin.create(p)) {
            int nodes = admin.describeCluster().nodes().get(6, TimeUnit.SECONDS).size();
            int topics = admin.listTopics().names().get(6, TimeUnit.SECONDS).size();
            if (nodes < 1) {
                System.exit(1);
            }
            System.out.println("brokers=" + nodes + " topics=" + topics);
        } catch (Exception e) {
            System.err.println("not ready: " + e);
            System.exit(1);
        }
    }
}
